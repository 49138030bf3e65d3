import sys

from keras_aerec.cli.main import main

sys.exit(main())
