import sys

from keras_aerec_cli import main

sys.exit(main())
