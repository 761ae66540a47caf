# Sourced by bench/model_eval.sh and bench/stream_rows.sh (which set $out first).
# step NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists (an interrupted run resumes),
# and append its wall time to $out/wall_times.txt.
step() {
  local name=$1 done_when=$2
  shift 2
  if [ -e "$done_when" ]; then echo "[$name] done already ($done_when)"; return; fi
  local t0=$SECONDS
  "$@"
  echo "[$name] $((SECONDS - t0)) s" | tee -a "$out/wall_times.txt"
}
