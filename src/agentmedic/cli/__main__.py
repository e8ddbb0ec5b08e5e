import sys

from agentmedic.cli.main import main

sys.exit(main())
