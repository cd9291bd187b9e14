package main

import (
	"testing"

	"github.com/seer-ml/seer/internal/redistest"
)

// TestMain checks that the service's goroutines (the cache's poller and
// shadow worker, the reload handler) end with the tests.
func TestMain(m *testing.M) {
	redistest.VerifyTestMain(m)
}
