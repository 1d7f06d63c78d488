from vidbox.cli import main

main()
