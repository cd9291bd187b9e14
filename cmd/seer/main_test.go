package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the service's goroutines (the cache's poller and
// shadow worker, the reload handler) end with the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
