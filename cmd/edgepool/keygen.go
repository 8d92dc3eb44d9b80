package main

import "errors"

// TODO(in progress): implemented by the keygen work.
func runKeygen(args []string) error { return errors.New("keygen: not built yet") }
