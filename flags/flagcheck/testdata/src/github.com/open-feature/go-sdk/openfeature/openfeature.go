// Package openfeature is a stub of the go-sdk's client.
package openfeature

import "context"

type EvaluationContext struct{}

type Client struct{}

func (c *Client) BooleanValue(ctx context.Context, flag string, def bool, evalCtx EvaluationContext) (bool, error) {
	return def, nil
}

func (c *Client) StringValueDetails(ctx context.Context, flag string, def string, evalCtx EvaluationContext) (string, error) {
	return def, nil
}
