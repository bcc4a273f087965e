from slmchat.faces.cli import main

main()
