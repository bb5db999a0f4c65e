package azure

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RawNames lists every blob name in the store's container, whatever its
// prefix, unfiltered.
func RawNames(ctx context.Context, s *Store) ([]string, error) {
	var names []string
	marker := ""
	for {
		q := []string{"restype", "container", "comp", "list"}
		if marker != "" {
			q = append(q, "marker", marker)
		}
		resp, err := s.do(ctx, &request{op: "list", method: http.MethodGet, query: q})
		if err != nil {
			return nil, err
		}
		var page listPage
		err = xml.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		for _, b := range page.Blobs {
			names = append(names, b.Name.Value)
		}
		if page.NextMarker == "" {
			return names, nil
		}
		marker = page.NextMarker
	}
}

// ContainerSAS returns a service SAS token (version 2021-08-06) for a
// container, signed with the base64 account key, as
// https://learn.microsoft.com/rest/api/storageservices/create-service-sas
// describes. perms are container permission letters in the documented
// order ("racwdl").
func ContainerSAS(account, key, container, perms string, start, expiry time.Time) (string, error) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return "", err
	}
	const version, resource, protocol = "2021-08-06", "c", "https,http"
	st, se := start.UTC().Format(time.RFC3339), expiry.UTC().Format(time.RFC3339)
	toSign := strings.Join([]string{
		perms, st, se, "/blob/" + account + "/" + container,
		"", // signed identifier
		"", // signed IP
		protocol, version, resource,
		"",                 // snapshot time
		"",                 // encryption scope
		"", "", "", "", "", // rscc, rscd, rsce, rscl, rsct
	}, "\n")
	v := url.Values{
		"sv": {version}, "spr": {protocol}, "st": {st}, "se": {se},
		"sr": {resource}, "sp": {perms}, "sig": {signature(k, toSign)},
	}
	return v.Encode(), nil
}
