package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

// runKeygen prints a new API key and the pooler config entry (verifiers, never the key) that
// accepts it: `edgepool keygen --name default`.
func runKeygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	name := fs.String("name", "default", "key name (the client's user name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entry, key, err := apikey.NewConfigKey(*name)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(entry, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "API key (shown once; give it to the client, it is the password):\n%s\n\n", key)
	fmt.Fprintf(os.Stdout, "Config entry for \"keys\" in %s:\n%s\n", config.FileName, out)
	return nil
}
