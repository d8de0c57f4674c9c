// status-check reads Kubernetes objects (a JSON list, or a JSON object with "items") on
// stdin and prints, one line each, what kstatus — the status library Flux and kubectl's
// apply/wait tooling use — computes for them: "<kind>/<name> <status> <message>".
// The operator's integration tests use it as an oracle nobody here wrote.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read stdin:", err)
		os.Exit(2)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil {
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err2 := json.Unmarshal(data, &list); err2 != nil {
			fmt.Fprintln(os.Stderr, "parse stdin:", err)
			os.Exit(2)
		}
		items = list.Items
	}
	for _, raw := range items {
		u := &unstructured.Unstructured{}
		// Unstructured's own decoder keeps integers as int64, as kstatus expects.
		if err := u.UnmarshalJSON(raw); err != nil {
			fmt.Fprintln(os.Stderr, "parse object:", err)
			os.Exit(2)
		}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Printf("%s/%s Error %s\n", u.GetKind(), u.GetName(), err)
			continue
		}
		fmt.Printf("%s/%s %s %s\n", u.GetKind(), u.GetName(), res.Status, res.Message)
	}
}
