package serving

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of the HTTP API, kept beside the
// handlers it describes; TestOpenAPIExamples posts every example it holds
// to them and validates the answers against it.
//
//go:embed openapi.json
var openAPI []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeBody(w, openAPI)
}
