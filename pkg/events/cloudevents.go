package events

import (
	"encoding/json"
	"strings"
	"time"
)

// CloudEvents 1.0 structured mode: what the webhook posts and the log
// file holds, one event per document.
const (
	CloudEventsSpec        = "1.0"
	CloudEventsContentType = "application/cloudevents+json"
)

// CloudEventType maps a detail-type to its CloudEvents type:
// "Berth Image Action" → "berth.image.action.v1".
func CloudEventType(detailType string) string {
	return strings.ReplaceAll(strings.ToLower(detailType), " ", ".") + ".v" + Version
}

// CloudEvent is the structured-mode JSON document.
type CloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            Detail    `json:"data"`
}

// ToCloudEvent returns ev as a CloudEvent. The subject is the repository
// (or the blob digest of a blob event), so subscribers can filter on it.
func ToCloudEvent(ev Event) CloudEvent {
	subject := ev.Detail.RepositoryName
	if subject == "" {
		subject = ev.Detail.BlobDigest
	}
	return CloudEvent{
		SpecVersion: CloudEventsSpec, ID: ev.ID, Source: Source, Type: CloudEventType(ev.DetailType),
		Subject: subject, Time: ev.Time, DataContentType: "application/json", Data: ev.Detail,
	}
}

// MarshalCloudEvent encodes ev in CloudEvents structured JSON.
func MarshalCloudEvent(ev Event) ([]byte, error) { return json.Marshal(ToCloudEvent(ev)) }
