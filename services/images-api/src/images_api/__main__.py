from images_api.entrypoints.cli import main

main()
