package main

import "errors"

// TODO(in progress): implemented by the manager work.
func runManager(args []string) error { return errors.New("manager: not built yet") }
