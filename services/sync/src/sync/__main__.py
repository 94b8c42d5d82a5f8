from sync.entrypoints.cli import main

main()
