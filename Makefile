# Deep Speech 2 from scratch. Every target creates .venv on first use and installs into it.
#   make grade    grade exercises/ against the reference and print the scoreboard (the main job)
#   make test     run the test suite (what CI runs)
# See README.md for the rest.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ONLY   ?=
FILES  ?= exercises
DIR    ?= build/nbgrader-course
SECONDS ?= 60
SUBMISSIONS ?= submissions
# a class (docs/instructors.md): CSV=..., DEADLINE=2026-12-01T23:59, LATE_RULE=10%/day,cap=50%, IDS=map.csv
CSV    ?= grades.csv
DEADLINE ?=
LATE_RULE ?=
IDS    ?=
STUDENT ?=
RELEASE_DIR ?= build/student-release
GRADESCOPE_ZIP ?= build/gradescope-autograder.zip
OUT    ?= build/similarity
PYTEST_ARGS ?=
V      ?=
TEST_JOBS ?= 2
# torch's CPU build on Linux machines without an NVIDIA GPU (plain pip would fetch the CUDA build,
# gigabytes). Skipped where pip already has a wheel source configured (find-links: course machines
# and CI). `make setup TORCH_INDEX=` keeps pip's default index; TORCH_INDEX=URL picks another.
TORCH_INDEX ?= $(shell [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
                 && [ -z "$$PIP_FIND_LINKS" ] && ! $(PYTHON) -m pip config list 2>/dev/null | grep -q find-links \
                 && echo https://download.pytorch.org/whl/cpu)

.PHONY: help setup grade test test-fast demo train transcribe lessons lab exercises check-exercises \
        bench handin grade-class nbgrader-course release gradescope similarity asterisk asterisk-model espeak-model clean

help:
	@sed -n '1,6p' Makefile | sed 's/^# \{0,1\}//'
	@echo "Targets: setup grade test test-fast demo train asterisk lessons lab exercises check-exercises bench handin grade-class nbgrader-course release gradescope similarity asterisk-model espeak-model clean"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --disable-pip-version-check --index-url $(TORCH_INDEX) \
	    "$$(grep -E '^torch==' requirements.txt)")
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import torch, numpy, matplotlib, nbformat, pytest" || { echo "error: installing requirements.txt into $(VENV) failed"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps pyctcdecode==0.5.0 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import reference" || { echo "error: installing the course package into $(VENV) failed"; exit 1; }
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything

grade: $(STAMP)  ## grade exercises/ (FILES=..., ONLY=exNN, V=1 for your code's output)
	$(PY) -m autograder $(FILES) $(if $(ONLY),--only $(ONLY)) $(if $(V),-v)

test: $(STAMP)  ## the whole test suite (reference, autograder, exercises, lessons), TEST_JOBS processes
	$(PY) -m pytest $(if $(filter-out 0 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile) $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the test suite without slow tests (training runs, notebooks)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)  ## train the demo model on synthetic speech for SECONDS (default 60) and report held-out WER
	$(PY) -m reference.train --preset demo --seconds $(SECONDS) --out runs/demo

train: $(STAMP)  ## the capstone: train on synthesized eSpeak speech (ARGS=... for more options)
	$(PY) -m reference.train --preset espeak --out runs/espeak $(ARGS)

asterisk: $(STAMP)  ## a human voice: Debian's Asterisk prompts (apt-get download) as FLAC + NeMo manifests in OUT (default data/asterisk)
	$(PY) -m reference.prepare asterisk $(if $(filter command line,$(origin OUT)),$(OUT),data/asterisk)

voices: $(STAMP)  ## many synthesized voices (eSpeak NG, Flite; Pico and RHVoice from Debian non-free) saying WordNet's examples (apt-get download) -> OUT (default data/voices)
	$(PY) -m reference.prepare voices $(if $(filter command line,$(origin OUT)),$(OUT),data/voices)

# The recipe of models/espeak-ds2.pt, the capstone model: four rounds of model soups.  Round 1: bench_capstone's
# spec-augment run (the espeak preset + SpecAugment) for 3000 s on one thread, two runs that go on from it for 2400 s
# each (lr 2e-3 and 4e-3, side by side, one thread each), and the mean of the three.  Rounds 2 and 3: two runs from
# the last mean (lr 1e-3 and 2e-3; 2400 s, then 1800 s; with the compiled GRU and BatchNorm kernels:
# DS2_GRU_KERNEL=1), and the mean of that soup and the two.  Round 4: the same with a paper run (no SpecAugment; a
# later --runs replaces CAPSTONE's) at lr 1e-3 and a spec-augment run at 5e-4, 2400 s each.  Each soup is measured
# and recorded by --load --record (the results, and the alpha and beta that reference.transcribe takes as defaults);
# the last one tunes alpha and beta on 1,642 new sentences (--dev-fresh; docs/figures.md: 200 clips mis-rank these
# models).  About 220 minutes on 2 cores; the budgets are seconds, so a faster machine takes more steps.
CAPSTONE = $(PY) benchmarks/bench_capstone.py --runs spec-augment --threads 1 --eval-every 1000
espeak-model: $(STAMP)  ## train models/espeak-ds2.pt: four rounds of capstone runs averaged (about 220 minutes)
	$(CAPSTONE) --seconds 3000 --save runs/capstone-s0
	$(PY) -m tools.export_model runs/capstone-s0/spec-augment.pt runs/capstone-s0.pt
	$(CAPSTONE) --init runs/capstone-s0.pt --lr 2e-3 --seed 1 --seconds 2400 --save runs/capstone-c1 & one=$$!; \
	$(CAPSTONE) --init runs/capstone-s0.pt --lr 4e-3 --seed 2 --seconds 2400 --save runs/capstone-c2 & two=$$!; \
	wait $$one && wait $$two
	$(PY) -m tools.export_model runs/capstone-s0.pt runs/capstone-soup/spec-augment.pt \
	    --average-with runs/capstone-c1/spec-augment.pt runs/capstone-c2/spec-augment.pt
	$(PY) benchmarks/bench_capstone.py --runs spec-augment --load runs/capstone-soup --record
	DS2_GRU_KERNEL=1 $(CAPSTONE) --init runs/capstone-soup/spec-augment.pt --lr 1e-3 --seed 3 --seconds 2400 --save runs/capstone-c3 & one=$$!; \
	DS2_GRU_KERNEL=1 $(CAPSTONE) --init runs/capstone-soup/spec-augment.pt --lr 2e-3 --seed 4 --seconds 2400 --save runs/capstone-c4 & two=$$!; \
	wait $$one && wait $$two
	$(PY) -m tools.export_model runs/capstone-soup/spec-augment.pt runs/capstone-soup2/spec-augment.pt \
	    --average-with runs/capstone-c3/spec-augment.pt runs/capstone-c4/spec-augment.pt
	$(PY) benchmarks/bench_capstone.py --runs spec-augment --load runs/capstone-soup2 --record
	DS2_GRU_KERNEL=1 $(CAPSTONE) --init runs/capstone-soup2/spec-augment.pt --lr 1e-3 --seed 5 --seconds 1800 --save runs/capstone-c5 & one=$$!; \
	DS2_GRU_KERNEL=1 $(CAPSTONE) --init runs/capstone-soup2/spec-augment.pt --lr 2e-3 --seed 6 --seconds 1800 --save runs/capstone-c6 & two=$$!; \
	wait $$one && wait $$two
	$(PY) -m tools.export_model runs/capstone-soup2/spec-augment.pt runs/capstone-soup3/spec-augment.pt \
	    --average-with runs/capstone-c5/spec-augment.pt runs/capstone-c6/spec-augment.pt
	$(PY) benchmarks/bench_capstone.py --runs spec-augment --load runs/capstone-soup3 --record
	DS2_GRU_KERNEL=1 $(CAPSTONE) --runs paper --init runs/capstone-soup3/spec-augment.pt --lr 1e-3 --seed 7 --seconds 2400 --save runs/capstone-c7 & one=$$!; \
	DS2_GRU_KERNEL=1 $(CAPSTONE) --init runs/capstone-soup3/spec-augment.pt --lr 5e-4 --seed 8 --seconds 2400 --save runs/capstone-c8 & two=$$!; \
	wait $$one && wait $$two
	$(PY) -m tools.export_model runs/capstone-soup3/spec-augment.pt runs/capstone-soup4/spec-augment.pt \
	    --average-with runs/capstone-c7/paper.pt runs/capstone-c8/spec-augment.pt
	$(PY) benchmarks/bench_capstone.py --runs spec-augment --load runs/capstone-soup4 --record --fresh 2000 --dev-fresh 2000
	cp runs/capstone-soup4/spec-augment.pt models/espeak-ds2.pt

# The recipe of models/voices-ds2.pt: trained on data/voices only (it has never heard a person), in three
# stages: 6000 steps from scratch on the eSpeak and Flite clips, then 4000 more from that export at half the
# learning rate (the held-out WER was still falling at step 6000), then 2500 at lr 1e-3 with the six Pico
# and RHVoice voices mixed in (train-all.jsonl; docs/figures.md: what they bought a person's voice).  The
# second stage ran beside another training job, hence one thread.  models/asterisk-ds2.pt is fine-tuned
# from the second stage's export, runs/voices-two-stage.pt.
VOICES_TRAIN = --preset espeak --data data/voices/train.jsonl --valid-data data/voices/dev.jsonl --max-seconds 10 \
               --rnn-hidden 192 --conv-channels 16 --spec-augment --batch-size 32 --lr 4e-3 --anneal 0.1 \
               --steps 6000 --seconds 0 --epochs 100 --eval-every 2000 --feature-cache data_cache/voices-features --workers 0 --seed 0
VOICES_MORE = --init models/voices-ds2.pt --data data/voices/train.jsonl --valid-data data/voices/dev.jsonl --max-seconds 10 \
              --spec-augment --batch-size 32 --lr 2e-3 --anneal 0.1 --steps 4000 --seconds 0 --epochs 100 --eval-every 2000 \
              --feature-cache data_cache/voices-features --workers 0 --seed 1 --threads 1
VOICES_THIRD = --init models/voices-ds2.pt --data data/voices/train-all.jsonl --valid-data data/voices/dev.jsonl --max-seconds 10 \
               --spec-augment --batch-size 32 --lr 1e-3 --anneal 0.1 --steps 2500 --seconds 0 --epochs 100 --eval-every 2500 \
               --feature-cache data_cache/voices-features --workers 0 --seed 2
voices-model: $(STAMP)  ## train models/voices-ds2.pt on data/voices (make voices first; about two hours on 2 cores)
	$(PY) -m reference.train $(VOICES_TRAIN) --out runs/voices
	$(PY) -m tools.export_model runs/voices/checkpoint.pt models/voices-ds2.pt
	$(PY) -m reference.train $(VOICES_MORE) --out runs/voices2
	$(PY) -m tools.export_model runs/voices2/checkpoint.pt models/voices-ds2.pt
	cp models/voices-ds2.pt runs/voices-two-stage.pt
	$(PY) -m reference.train $(VOICES_THIRD) --out runs/voices3
	$(PY) -m tools.export_model runs/voices3/checkpoint.pt models/voices-ds2.pt

# The recipe of models/asterisk-ds2.pt: the voices model's second stage (runs/voices-two-stage.pt of
# make voices-model) fine-tuned on the Asterisk TRAIN prompts (one person),
# nine times, and the mean of the nine models' weights shipped (a model soup: reference.checkpoint.average_checkpoints):
# three fine-tunes with seeds 0, 1 and 2, and from each of them two that go on for another 40 epochs at lr 1.5e-3
# (seed 1) and 3e-3 (seed 2).  Each is 2680 steps, about 14 minutes on 2 idle cores: two hours in all.
ASTERISK_FT = --data data/asterisk/train.jsonl --valid-data data/asterisk/dev.jsonl --max-seconds 15 \
              --speed-perturb 0.9 1.1 --spec-augment --batch-size 16 --anneal 0.1 --epochs 40 --seconds 0
ASTERISK_RUNS = $(foreach s,0 1 2,runs/asterisk-s$(s)/checkpoint.pt) \
                $(foreach s,0 1 2,runs/asterisk-s$(s)c15/checkpoint.pt runs/asterisk-s$(s)c30/checkpoint.pt)
asterisk-model: $(STAMP)  ## fine-tune the voices model's second stage on data/asterisk nine times, average -> models/asterisk-ds2.pt (two hours)
	for seed in 0 1 2; do \
	    $(PY) -m reference.train $(ASTERISK_FT) --init runs/voices-two-stage.pt --lr 3e-3 --seed $$seed --eval-every 200 --out runs/asterisk-s$$seed || exit 1; done
	for seed in 0 1 2; do \
	    $(PY) -m tools.export_model runs/asterisk-s$$seed/checkpoint.pt runs/asterisk-s$$seed.pt && \
	    $(PY) -m reference.train $(ASTERISK_FT) --init runs/asterisk-s$$seed.pt --lr 1.5e-3 --seed 1 --eval-every 400 --out runs/asterisk-s$${seed}c15 && \
	    $(PY) -m reference.train $(ASTERISK_FT) --init runs/asterisk-s$$seed.pt --lr 3e-3 --seed 2 --eval-every 400 --out runs/asterisk-s$${seed}c30 || exit 1; done
	$(PY) -m tools.export_model $(firstword $(ASTERISK_RUNS)) models/asterisk-ds2.pt --average-with $(wordlist 2,$(words $(ASTERISK_RUNS)),$(ASTERISK_RUNS))

lessons: $(STAMP)  ## execute every lesson headless and render HTML into build/lessons
	$(PY) -m tools.run_lessons --html build/lessons

lab: $(STAMP)  ## open the lessons in JupyterLab
	$(VENV)/bin/jupyter lab lessons/

exercises: $(STAMP)  ## regenerate exercises/ from solutions/
	$(PY) -m autograder.generate

check-exercises: $(STAMP)  ## fail if exercises/ differs from what solutions/ generate
	$(PY) -m autograder.generate --check

bench: $(STAMP)  ## every benchmark; each prints its figures and thread count
	$(PY) benchmarks/bench_demo.py
	$(PY) benchmarks/bench_rnn.py
	$(PY) benchmarks/bench_ctc.py
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_beam_search.py --quick
	$(PY) benchmarks/bench_autograder.py
	$(PY) benchmarks/bench_gpu.py

grade-class: $(STAMP)  ## batch-grade SUBMISSIONS (a folder or .zip per student, or a Canvas/Moodle download) into CSV; FORMAT=canvas
	$(PY) -m autograder batch $(SUBMISSIONS) --csv $(CSV) --jobs 2 $(if $(IDS),--ids $(IDS)) \
	    $(if $(DEADLINE),--deadline $(DEADLINE)) $(if $(LATE_RULE),--late-rule "$(LATE_RULE)") \
	    $(if $(FORMAT),--format $(FORMAT))

handin: $(STAMP)  ## zip exercises/ with a manifest for submission (STUDENT=<your id> records it)
	$(PY) -m autograder handin exercises -o handin.zip $(if $(STUDENT),--student $(STUDENT))

release: $(STAMP)  ## the student release in RELEASE_DIR (DIR=... also works): public checks only, no solutions/
	$(PY) -m autograder release $(if $(filter command line,$(origin DIR)),$(DIR),$(RELEASE_DIR)) $(if $(FORCE),--force)

gradescope: $(STAMP)  ## the Gradescope autograder zip (GRADESCOPE_ZIP, default build/gradescope-autograder.zip)
	$(PY) -m autograder gradescope $(GRADESCOPE_ZIP)

similarity: $(STAMP)  ## copydetect over SUBMISSIONS, per exercise, into OUT (default build/similarity)
	$(PY) -m autograder similarity $(SUBMISSIONS) --out $(OUT)

nbgrader-course: $(STAMP)  ## build an nbgrader course directory in DIR
	$(PY) -m autograder nbgrader $(DIR)

clean:
	rm -rf build runs .pytest_cache
