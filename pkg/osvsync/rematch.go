package osvsync

// KindRematch is the "berth" field of the event the osvsync function
// sends the scan function (an asynchronous Lambda invoke) after a run
// that stored new data: re-match every scanned image against it.
const KindRematch = "rematch"

// RematchEvent is that event: {"berth":"rematch","ecosystems":[...]}.
// Ecosystems lists what changed, for the logs; the scan function reloads
// every export whose object changed, whatever the list says.
type RematchEvent struct {
	Berth      string   `json:"berth"`
	Ecosystems []string `json:"ecosystems,omitempty"`
}
