package models

import "fmt"

func loadXGBoost(data []byte, opt Options) (Model, error) {
	return nil, fmt.Errorf("%w: format xgboost is not implemented yet", ErrArtifact)
}
