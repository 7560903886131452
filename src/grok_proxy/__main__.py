from grok_proxy.cli import main

main()
