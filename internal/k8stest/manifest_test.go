package k8stest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDocMeta(t *testing.T) {
	docs := splitDocuments(`
# a comment
---
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    name: not-this-one
  name: "web" # the name
  namespace: prod
spec:
  template:
    metadata:
      name: nor-this-one
---
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
--- # trailing
`)
	require.Len(t, docs, 2)
	m, err := docMeta(docs[0])
	require.NoError(t, err)
	assert.Equal(t, meta{"apps/v1", "Deployment", "web", "prod"}, m)
	m, err = docMeta(docs[1])
	require.NoError(t, err)
	assert.Equal(t, meta{"v1", "Service", "web", ""}, m)
	_, err = docMeta("kind: Pod\n")
	assert.Error(t, err)
}
