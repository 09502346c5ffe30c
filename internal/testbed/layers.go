package testbed

import "fmt"

// prepareConf runs Options.PrepareConf on the generated ocserv.conf.
func (b *Bed) prepareConf() error {
	if b.opts.PrepareConf == nil {
		return nil
	}
	p, err := b.opts.PrepareConf(b, b.confPath)
	if err != nil {
		return fmt.Errorf("PrepareConf: %w", err)
	}
	if p != "" {
		b.confPath = p
	}
	return nil
}
