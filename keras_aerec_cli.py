"""The `keras-aerec` command's entry point (`python -m keras_aerec_cli` runs it too).

It lives outside the `keras_aerec` package on purpose: `import keras_aerec` registers every
model, layer and loss with Keras, so that `keras.saving.load_model` works right after it, and
that imports a backend (seconds of start-up). The command defers those imports, so that
`keras-aerec --help` answers at once; its subcommands import what they use.
"""

import os
import sys

_DEFER = "KERAS_AEREC_DEFER_IMPORTS"


def _cli():
    os.environ[_DEFER] = "1"
    try:
        from keras_aerec.cli import main as cli
    finally:
        # Only this import is deferred: child processes and later imports are not.
        os.environ.pop(_DEFER, None)
    return cli


def main(argv=None) -> int:
    return _cli().main(argv)


def build_parser():
    return _cli().build_parser()


if __name__ == "__main__":
    sys.exit(main())
