package limithttp_test

import (
	"os"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
