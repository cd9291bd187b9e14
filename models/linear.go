package models

import "fmt"

func loadLinear(data []byte, opt Options) (Model, error) {
	return nil, fmt.Errorf("%w: format linear is not implemented yet", ErrArtifact)
}
