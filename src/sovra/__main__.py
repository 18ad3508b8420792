from sovra.cli import main

raise SystemExit(main())
