from groupwatch.cli import main

main()
