package models

import "fmt"

func loadSklearn(data []byte, opt Options) (Model, error) {
	return nil, fmt.Errorf("%w: format sklearn is not implemented yet", ErrArtifact)
}
