#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for FUZZTIME each (make fuzz-smoke: 2s, make
# fuzz: 2m). A target that finds a crash fails the run; its input is in the package's
# testdata/fuzz/<Target>/ and from then on a regression case of plain `go test`: commit it
# with the fix. Targets are found by their `func FuzzX(f *testing.F)` line, so a new one
# needs no change here.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-2s}"
GO="${GO:-go}"

mapfile -t targets < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort |
  while read -r f; do
    dir="./$(dirname "$f")"
    grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | sed "s|^|$dir |"
  done)

echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
start=$SECONDS
failed=()
# Go 1.26's fuzz coordinator can report the end of -fuzztime itself as a failure: a bare
# "context deadline exceeded" with no input written (go.dev/issue/75804, fixed in Go 1.27).
# Such a run found nothing, so it is run once more; a second failure of any kind fails.
coordinator_race() {
  grep -q '^    context deadline exceeded$' <<<"$1" && ! grep -q 'Failing input written' <<<"$1"
}
fuzz() {
  "$GO" test -run '^$' -fuzz "^${2}\$" -fuzztime "$FUZZTIME" "$1" 2>&1
}
for t in "${targets[@]}"; do
  read -r dir name <<<"$t"
  t0=$SECONDS
  note=""
  ok=true
  if ! out=$(fuzz "$dir" "$name"); then
    ok=false
    if coordinator_race "$out"; then
      note="(again after go.dev/issue/75804)"
      out=$(fuzz "$dir" "$name") && ok=true
    fi
  fi
  if $ok; then
    execs=$(grep -o 'execs: [0-9]*' <<<"$out" | tail -1 || true)
    printf '  ok    %-32s %-28s %3ds  %s %s\n' "$dir" "$name" $((SECONDS - t0)) "$execs" "$note"
  else
    printf '  FAIL  %-32s %s\n%s\n' "$dir" "$name" "$out"
    failed+=("$dir $name")
  fi
done
echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) of ${#targets[@]} targets passed in $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}; the crashing inputs are in testdata/fuzz/ of those packages" >&2
  exit 1
fi
