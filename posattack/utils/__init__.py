"""What every floor uses: atomic file writes and reads (:mod:`.fileio`), safe checkpoint
loading (:mod:`.checkpoint`), the process group on CPU (:mod:`.distributed`), the command
line's shared parsing (:mod:`.cli`), dataset descriptions (:mod:`.datasets`) and the machine
stamp (:mod:`.machine`). Nothing here imports the rest of posattack."""
