//! Figures for docs/benchmarks.md (ignored tests, run by bench/live.sh).
