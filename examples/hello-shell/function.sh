# The handler: function.handler. It gets the event JSON as $1 and prints the response.
handler() {
	echo "{\"message\":\"Hello from a shell custom runtime\",\"event\":$1}"
}
