package gcs

// NewWithTransport is New with wrap applied to the HTTP transport below the
// authentication layer, for fault injection in tests.
var NewWithTransport = newStore

// ParseEndpoint exposes parseEndpoint to the tests.
var ParseEndpoint = parseEndpoint

// Translate exposes translate to the tests.
var Translate = translate
