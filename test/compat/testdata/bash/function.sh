# The tutorial's handler: logs the event to stderr and returns it, plus a few failures.
function handler () {
    EVENT_DATA=$1
    echo "$EVENT_DATA" 1>&2
    case "$EVENT_DATA" in
        *fail*) echo "bad input"; return 1 ;;
        *sleep*) sleep 5 ;;
    esac
    RESPONSE="Echoing request: '$EVENT_DATA'"
    echo $RESPONSE
}
