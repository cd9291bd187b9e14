package models

import "fmt"

func loadLightGBM(data []byte, opt Options) (Model, error) {
	return nil, fmt.Errorf("%w: format lightgbm is not implemented yet", ErrArtifact)
}
