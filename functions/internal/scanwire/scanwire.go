// Package scanwire is the scan function behind its main: the handler that
// turns the function's three events into pkg/scan calls (S3 ObjectCreated
// under blobs/ → index the layer; an EventBridge "Berth Image Action"
// PUSH → scan the image; the osvsync function's re-match request →
// re-match every scanned image), and the OSV data the matcher reads from
// the bucket (OSVData).
package scanwire
