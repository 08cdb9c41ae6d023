from dmops.cli import main

main()
