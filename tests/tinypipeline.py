"""The smallest pipeline a test needs: one step writing one output file, out/model.bin."""

PIPELINE = """kind: Pipeline
name: p
steps:
  - name: make
    command: [python, steps/make.py, "${outputs.o}"]
    outputs:
      o: out/model.bin
"""
MAKE = "import os, sys\nos.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)\nopen(sys.argv[1], 'w').write('m')\n"
