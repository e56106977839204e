# Sourced by ci.sh and long.sh: libFuzzer options a target needs beyond the time limit.
# api_tl_decode: inputs up to 64 KiB, and any single allocation over 1 MiB or an RSS over 512 MiB is
# a crash (a count field that reserves more than the bytes left can hold; the target also bounds
# every allocation by the input's size itself, at any size).
target_args() {
  case "$1" in
    api_tl_decode) echo "-max_len=65536 -malloc_limit_mb=1 -rss_limit_mb=512" ;;
    *) echo "-rss_limit_mb=2048" ;;
  esac
}
