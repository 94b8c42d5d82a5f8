from generator.entrypoints.cli import main

# The guard matters: render-pool workers (forkserver) import the main module.
if __name__ == "__main__":
    main()
