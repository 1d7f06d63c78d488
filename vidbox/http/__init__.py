"""The HTTP server of ``vidbox serve``: uvicorn, with what vidbox adds to it and why.

uvicorn parses HTTP and runs the ASGI app; vidbox keeps it, on asyncio's own event loop, and
subclasses its httptools protocol to add four things. Each was measured (``bench/README.md``
has the runs, on a 2-core VM):

- **Zero-copy media** (``server``: the ASGI "Zero Copy Send" extension). Most of what vidbox
  serves is HLS segments; uvicorn has no ``sendfile``, so each byte went through Python twice.
  With the kernel sending them (``loop.sendfile``), ``bench/serving.py`` went from 0.46x to
  0.52x nginx's requests a second, and with the other fixes of that pass to 0.66-0.67x, p99
  64 ms. The price is asyncio's loop instead of uvloop (which has no ``sendfile``): HTML and
  JSON pages are about a fifth slower (dashboard p95 12.7 -> 15.7 ms, target 20 ms).
- **Request bodies without copies** (``request_body``). uvicorn copied every body chunk twice
  and paused the socket past 64 KiB, nearly every chunk. Chunks now reach the app as the
  parser made them; a body of known length can be read from the socket straight into the
  app's buffers (``readinto``: server CPU per GiB of multipart 0.80-0.89 s -> 0.59-0.72 s) or
  moved into a file inside the kernel (``to_file``, ``splice(2)`` through a pipe on receiving
  threads, ``splice``: tus 0.54-0.61 s -> 0.41-0.45 s; with SO_RCVLOWAT a one-PATCH 1 GiB tus
  upload keeps up with ``cp``, 0.92-1.08x).
- **Limits per client** (``limits``): request-head size and time, body idle time, connections
  per address. Without them a 16 MiB header was read into memory whole, 300 connections
  trickling a header byte stayed open for ever, and a tus client gone silent held its
  upload's lock for ever.
- **A clean stop**: each request is told when the server begins to stop (an event stream then
  ends), and a body still arriving is cut off with its bytes kept after a short grace, inside
  uvicorn's graceful-shutdown timeout, itself below the 10 s a container manager allows.

``listen`` binds the listening socket before the app starts. Everything vidbox knows about
uvicorn's insides is in ``uvicorn_internals``, each piece tested in
``tests/http/test_uvicorn_internals.py``: a uvicorn release that changes them fails there, by
name, rather than in the middle of an upload. Where a request lacks what an extension needs at
run time, that extension is not offered and the app streams by itself: slower, never wrong.
Its worker threads (receiving bodies, and ``to_thread`` work) are ``vidbox.threads``, owned
by ``server.Server`` for the length of its run.
"""
