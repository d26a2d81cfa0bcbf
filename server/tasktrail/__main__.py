from tasktrail.cli.main import main

raise SystemExit(main())
