from deepcurator.cli import main

raise SystemExit(main())
