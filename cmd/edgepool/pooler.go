package main

import "errors"

// TODO(in progress): implemented by the pooler work.
func runPooler(args []string) error { return errors.New("pooler: not built yet") }
