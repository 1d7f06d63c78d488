"""Share links: public and email-only links to one video, with expiry presets.

- ``links``: the owner's side: create (with mail to listed accounts), list, revoke, JSON.
- ``access``: the visitor's side: opening a link by its token, who may watch, views, and the
  one-time email sign-in for private links.
- ``notifications``: the in-app notifications a share creates, and the unread count.
- ``mail``: the share and sign-in mails, built from ids when the mail job sends them, and the
  job that answers access requests off the request path.
"""

from __future__ import annotations

from vidbox.sharing.access import (
    ACCESS_COOKIE,
    ACCESS_REQUESTED,
    EMAIL_OFF,
    GRANT_MINUTES,
    SharedVideo,
    access_cookie,
    check_grant,
    cookie_email,
    may_watch,
    open_link,
    record_view,
    request_access,
    shared_path_for,
)
from vidbox.sharing.links import (
    EXPIRY_PRESETS,
    STATUSES,
    VISIBILITIES,
    LinkRequest,
    create_link,
    link_json,
    link_status,
    link_token,
    links_for_video,
    list_links,
    parse_link_request,
    revoke_link,
    share_path,
    token_hash,
)
from vidbox.sharing.notifications import (
    list_notifications,
    mark_all_read,
    notification_json,
    unread_count,
)

__all__ = [
    "ACCESS_COOKIE",
    "ACCESS_REQUESTED",
    "EMAIL_OFF",
    "EXPIRY_PRESETS",
    "GRANT_MINUTES",
    "STATUSES",
    "VISIBILITIES",
    "LinkRequest",
    "SharedVideo",
    "access_cookie",
    "check_grant",
    "cookie_email",
    "create_link",
    "link_json",
    "link_status",
    "link_token",
    "links_for_video",
    "list_links",
    "list_notifications",
    "mark_all_read",
    "may_watch",
    "notification_json",
    "open_link",
    "parse_link_request",
    "record_view",
    "request_access",
    "revoke_link",
    "share_path",
    "shared_path_for",
    "token_hash",
    "unread_count",
]
