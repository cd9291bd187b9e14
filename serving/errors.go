package serving

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
	"github.com/seer-ml/seer/registry"
)

// Errors of the request path. Predict and Features wrap one of these, or a
// sentinel of the package at fault (registry.ErrUnknownModel,
// registry.ErrUnknownVersion, features.ErrQuery, models.ErrInput: values a
// model cannot score, such as an id outside an ONNX embedding table), with
// a message naming the field; errors.Is tells them apart.
var (
	// ErrBadRequest marks a request that is malformed or breaks a limit.
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge marks a request body over max_body_bytes.
	ErrTooLarge = errors.New("request too large")
	// ErrUnauthorized marks an admin call without the right token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrDisabled marks an admin call while admin endpoints are off.
	ErrDisabled = errors.New("disabled")
	// ErrDegraded marks a query that asked for on_degraded fail and whose
	// stores failed or missed the retrieval deadline; errors.As finds the
	// *DegradedError that names them.
	ErrDegraded = errors.New("degraded")
)

// DegradedError is the error of a query that asked for on_degraded fail
// when some of its stores failed or missed the retrieval deadline. It wraps
// ErrDegraded.
type DegradedError struct {
	Query  int      // the query's index in the request
	Stores []string // the stores that failed or timed out
}

func (e *DegradedError) Error() string {
	what := "store "
	if len(e.Stores) > 1 {
		what = "stores "
	}
	return fmt.Sprintf("queries[%d]: degraded: %s%s failed or missed the retrieval deadline, and on_degraded is fail",
		e.Query, what, strings.Join(e.Stores, ", "))
}

func (e *DegradedError) Unwrap() error { return ErrDegraded }

// class is what an error means to a client, whatever the transport.
type class uint8

const (
	classInternal class = iota
	classInvalid
	classNotFound
	classTooLarge
	classUnauthorized
	classForbidden
	classTimeout
	classCancelled
	classUnavailable
)

// classify is the one place where errors are mapped to what they mean to a
// client; each transport turns the class into its own status code.
func classify(err error) class {
	switch {
	case errors.Is(err, ErrTooLarge):
		return classTooLarge
	case errors.Is(err, ErrBadRequest), errors.Is(err, features.ErrQuery), errors.Is(err, models.ErrInput):
		return classInvalid
	case errors.Is(err, registry.ErrUnknownModel), errors.Is(err, registry.ErrUnknownVersion):
		return classNotFound
	case errors.Is(err, ErrUnauthorized):
		return classUnauthorized
	case errors.Is(err, ErrDisabled):
		return classForbidden
	case errors.Is(err, ErrDegraded):
		return classUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return classTimeout
	case errors.Is(err, context.Canceled):
		return classCancelled
	}
	return classInternal
}

// httpStatus is the HTTP status code of each class.
var httpStatus = [...]int{
	classInternal:     http.StatusInternalServerError,
	classInvalid:      http.StatusBadRequest,
	classNotFound:     http.StatusNotFound,
	classTooLarge:     http.StatusRequestEntityTooLarge,
	classUnauthorized: http.StatusUnauthorized,
	classForbidden:    http.StatusForbidden,
	classTimeout:      http.StatusGatewayTimeout,
	classCancelled:    statusClientClosed,
	classUnavailable:  http.StatusServiceUnavailable,
}

// statusClientClosed is the status recorded for a request whose client
// went away before it was answered (nginx's 499); nobody reads it.
const statusClientClosed = 499

// requestError is an error of a given kind (one of the sentinels above)
// whose message is its own: the sentinel's name is for errors.Is, not
// repeated in front of every message the client reads.
type requestError struct {
	kind error
	err  error
}

func (e *requestError) Error() string   { return e.err.Error() }
func (e *requestError) Unwrap() []error { return []error{e.kind, e.err} }

// badRequest formats an error that wraps ErrBadRequest (and what format
// wraps with %w).
func badRequest(format string, args ...any) error {
	return &requestError{ErrBadRequest, fmt.Errorf(format, args...)}
}

// kindError formats an error that wraps kind.
func kindError(kind error, format string, args ...any) error {
	return &requestError{kind, fmt.Errorf(format, args...)}
}
