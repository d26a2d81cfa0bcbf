from tasktrail.cli import main

raise SystemExit(main())
