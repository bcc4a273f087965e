from slmchat.cli import main

main()
