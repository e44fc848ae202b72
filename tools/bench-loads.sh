# The zaqar-bench arguments of the five side-by-side loads, shared by
# tools/bench-compare.sh and tools/bench-server-cpu.sh so that both measure
# the same work. Sourced; reads $PREFILL (messages pre-filled for claim).

# load_args NAME: the zaqar-bench options of load NAME.
load_args() {
    case "$1" in
        post1) echo "--producers 16 --batch 1" ;;
        post10) echo "--producers 16 --batch 10" ;;
        claim) echo "--consumers 16 --claim-limit 10 --prefill $PREFILL" ;;
        mixed) echo "--producers 6 --consumers 6 --observers 4 --batch 5 --claim-limit 10 --queues 2 --prefill 2000" ;;
        stats) echo "--stats-readers 16 --prefill 1000" ;;
    esac
}
