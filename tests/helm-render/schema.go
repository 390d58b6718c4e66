package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/xeipuuv/gojsonschema"
)

// validateValues is Helm's chartutil.ValidateAgainstSingleSchema, run by `helm install` and
// `helm template` when the chart has values.schema.json: the coalesced values against the
// schema with the same library Helm uses, with Helm's error text.
func validateValues(chartName string, schema []byte, values map[string]interface{}) error {
	if schema == nil {
		return nil
	}
	valuesJSON, err := json.Marshal(values)
	if err != nil {
		return err
	}
	if bytes.Equal(valuesJSON, []byte("null")) {
		valuesJSON = []byte("{}")
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(valuesJSON))
	if err != nil {
		return fmt.Errorf("%s: cannot read values.schema.json: %w", chartName, err)
	}
	if result.Valid() {
		return nil
	}
	var sb bytes.Buffer
	for _, e := range result.Errors() {
		fmt.Fprintf(&sb, "- %s\n", e)
	}
	return errors.New("values don't meet the specifications of the schema(s) in the following chart(s):\n" + chartName + ":\n" + sb.String())
}
