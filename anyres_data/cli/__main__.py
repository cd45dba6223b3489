from anyres_data.cli.app import main

main()
