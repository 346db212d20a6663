// A minimal `bbolt` command for tests: `check PATH` and `buckets PATH`, with the
// output of bbolt's own CLI. Debian's golang-github-coreos-bbolt-dev ships the
// library without cmd/bbolt, so this builds the same checks on that library.
package main

import (
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: bbolt check|buckets PATH")
		os.Exit(2)
	}
	db, err := bolt.Open(os.Args[2], 0600, &bolt.Options{ReadOnly: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer db.Close()
	switch os.Args[1] {
	case "check":
		err = db.View(func(tx *bolt.Tx) error {
			count := 0
			for err := range tx.Check() {
				fmt.Println(err)
				count++
			}
			if count > 0 {
				fmt.Printf("%d errors found\n", count)
				return fmt.Errorf("corrupt")
			}
			fmt.Println("OK")
			return nil
		})
	case "buckets":
		err = db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				fmt.Println(string(name))
				return nil
			})
		})
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
