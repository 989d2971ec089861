"""asv benchmarks for fastpool (see asv_bench/asv.conf.json)."""
