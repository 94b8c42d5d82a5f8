from publisher.entrypoints.cli import main

main()
