// Command k8s-validate checks Kubernetes manifests (a multi-document YAML stream such as the output of
// `helm template`, on stdin or in the files named as arguments) against the Kubernetes API's own types:
//
//   - every document must name an apiVersion and kind that the API knows (the built-in groups of
//     k8s.io/api, and the Prometheus Operator's monitoring.coreos.com/v1 for ServiceMonitor and
//     PrometheusRule);
//   - it is decoded strictly into that type: an unknown or duplicated field, or a value of the wrong
//     type, is an error (what `kubectl apply --validate=strict` refuses);
//   - built-in kinds are then checked against the API server's structural schema (the one server-side
//     apply uses, shipped in k8s.io/client-go): unknown fields, wrong types, and duplicate keys in
//     keyed lists (two containers, ports or env vars of the same name);
//   - metadata.name is required.
//
// It prints one line per document and exits 1 when any document fails. It does not run the API
// server's semantic validation (required fields inside a spec, immutable fields, quotas).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/managedfields"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

func main() {
	var inputs []namedReader
	if len(os.Args) > 1 {
		for _, path := range os.Args[1:] {
			f, err := os.Open(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			defer f.Close()
			inputs = append(inputs, namedReader{path, f})
		}
	} else {
		inputs = append(inputs, namedReader{"stdin", os.Stdin})
	}

	v, err := newValidator()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	valid, invalid := 0, 0
	for _, in := range inputs {
		reader := utilyaml.NewYAMLReader(bufio.NewReader(in.r))
		for index := 0; ; index++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: cannot read document %d: %v\n", in.name, index, err)
				os.Exit(2)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			id, err := v.validate(doc)
			if err != nil {
				invalid++
				fmt.Printf("INVALID %s (%s #%d): %v\n", id, in.name, index, err)
			} else {
				valid++
				fmt.Printf("valid   %s\n", id)
			}
		}
	}
	fmt.Printf("%d valid, %d invalid\n", valid, invalid)
	if invalid > 0 || valid == 0 {
		os.Exit(1)
	}
}

type namedReader struct {
	name string
	r    io.Reader
}

type validator struct {
	scheme  *runtime.Scheme
	decoder runtime.Decoder
	builtin *runtime.Scheme
	typed   managedfields.TypeConverter
}

func newValidator() (*validator, error) {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return &validator{
		scheme:  s,
		decoder: serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer(),
		builtin: scheme.Scheme,
		typed:   applyconfigurations.NewTypeConverter(scheme.Scheme),
	}, nil
}

func (v *validator) validate(doc []byte) (string, error) {
	jsonDoc, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return "?", fmt.Errorf("not valid YAML: %w", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(jsonDoc); err != nil {
		return "?", err
	}
	gvk := u.GroupVersionKind()
	id := fmt.Sprintf("%s %s", gvk.Kind, u.GetName())
	if gvk.Kind == "" || gvk.Version == "" {
		return id, errors.New("apiVersion and kind are required")
	}
	if u.GetName() == "" {
		return id, errors.New("metadata.name is required")
	}
	if !v.scheme.Recognizes(gvk) {
		return id, fmt.Errorf("%s is not a kind of the Kubernetes API (nor monitoring.coreos.com/v1)", gvk)
	}
	if _, _, err := v.decoder.Decode(jsonDoc, nil, nil); err != nil {
		return id, err
	}
	// The document as it was written (not the decoded object, which has dropped what its type lacks)
	// against the API's structural schema.
	if v.builtin.Recognizes(gvk) {
		if _, err := v.typed.ObjectToTyped(u); err != nil {
			return id, err
		}
	}
	return id, nil
}

// stripComments drops YAML comment lines, so that a document of comments only counts as empty.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
