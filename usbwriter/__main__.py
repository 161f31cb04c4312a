from usbwriter.cli import main

raise SystemExit(main())
